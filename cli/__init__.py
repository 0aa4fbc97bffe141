"""The `glassbox` command line: it parses flags, wires the packages below it together and prints.

It sits above every other package (agent, tools, tracer, replays, sites) and nothing imports it.
"""
