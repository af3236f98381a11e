"""Source readers for `simgr prepare --source NAME`, one module per raw layout; `registry` names them."""
