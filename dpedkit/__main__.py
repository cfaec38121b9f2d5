from dpedkit.cli import main

main()
