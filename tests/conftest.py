pytest_plugins = ["tests.support.fixtures", "tests.support.hostile_report"]
