from sales_etl.cli.commands import main

main()
