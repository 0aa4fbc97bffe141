"""An input is text typed into a page: a value YAML would read as a number, a truth value or a date is kept as it
was written (`zip: 01234` became 668, `price: 39.90` became 39.9, `phone: +4912345` lost its plus)."""

from __future__ import annotations

import textwrap

from agent.task import parse_task


def test_unquoted_input_values_are_kept_as_written() -> None:
    task = parse_task(
        textwrap.dedent("""\
        name: values
        goal: Enter {zip}, {price}, {phone}, {ratio}, {agree}, {day}, {count} and {pin}
        inputs:
          zip: 01234
          price: 39.90
          phone: +4912345
          ratio: 1.10
          agree: yes
          day: 2026-11-28
          count: 3
          pin: {value: 0007, secret: true}
        target: {start_url: "http://127.0.0.1:9/"}
        script:
          - {action: terminate, status: success}
        limits: {max_steps: 5}
        """)
    )
    values = task.input_values()
    assert values == {
        "zip": "01234",
        "price": "39.90",
        "phone": "+4912345",
        "ratio": "1.10",
        "agree": "yes",
        "day": "2026-11-28",
        "count": "3",
        "pin": "0007",
    }
    assert task.limits.max_steps == 5  # numbers elsewhere stay numbers
    assert task.goal_text().startswith("Enter 01234, 39.90, +4912345, 1.10, yes, 2026-11-28, 3 and")
