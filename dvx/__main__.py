from dvx.cli import main

main()
