from cascade.operator.main import main

main()
