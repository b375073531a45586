print("overseer: not yet")
