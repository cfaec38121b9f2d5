"""dpedkit: build paired phone/DSLR datasets in the DPED layout and train the DPED enhancer."""

__version__ = "0.1.0"
