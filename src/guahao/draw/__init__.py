"""Fair release by draw (摇号放号, issue 13 part 2): see docs/ARCHITECTURE.md "Release by draw"."""
