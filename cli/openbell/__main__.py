from openbell.commands.app import main

main()
