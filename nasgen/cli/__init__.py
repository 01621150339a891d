"""The command line: the parser (``nasgen.cli.main``) and one module per subcommand."""
