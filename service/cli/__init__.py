"""The offline command line (`simgr`): pipeline commands, the demo, and `serve`, which starts the app."""
