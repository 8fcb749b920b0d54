pytest_plugins = ["tests.fixtures.database", "tests.fixtures.sandbox", "tests.fixtures.sync"]
