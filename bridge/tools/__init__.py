"""Tools that drive the bridge from outside: scripted phones for tests, load and demos."""
