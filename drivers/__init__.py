"""Hardware drivers and their register/pin-level emulators. Never imports `node`."""
