from cai.main import cli_exit

cli_exit()
