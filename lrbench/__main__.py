from lrbench.console import main

main()
