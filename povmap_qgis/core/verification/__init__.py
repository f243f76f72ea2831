"""verification: a field sample of the map and design-based accuracy from what comes back."""
