"""The command line, one module per step of the journey: data, train (and runs), evaluate (and sweeps),
chat, publish, demo. Each module adds its commands to the parser (`add_commands`) and holds what they run;
`ftspace/__main__.py` assembles them."""
