from qe.cli import main

main()
