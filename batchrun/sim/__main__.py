from batchrun.sim import main

main()
