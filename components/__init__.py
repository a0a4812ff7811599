"""ComponentResources of the robot stack; pure helpers live beside them."""
