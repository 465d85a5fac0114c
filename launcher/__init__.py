"""The composition root: the `switchboard` command and its serving processes. The only code that
imports both the core (`server`) and the edge (`http_edge`)."""
