"""A small Tk desktop app for desktop tasks: a registration form that saves what is entered to a JSON file."""
