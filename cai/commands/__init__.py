"""One module per subcommand: add_parser(subparsers) and run(args, ctx) -> int. Nothing heavy at import."""
