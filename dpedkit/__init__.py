"""dpedkit: build paired phone/DSLR photo datasets in the DPED layout and train the DPED enhancer.

The Python API (each function does what the CLI command of the same name does)::

    import dpedkit
    dpedkit.align_folder("raw", "aligned")            # raw/<phone>, raw/<dslr> → aligned/
    dpedkit.cut_patches("aligned", "dataset")         # → dataset/<phone>/training_data/...
    dpedkit.train_model("dataset", "runs/phone", iters=1000)
    g = dpedkit.load_generator("runs/phone")
    out = dpedkit.enhance_image(g, "photo.jpg")       # uint8 RGB array

``import dpedkit`` stays light: the functions load OpenCV and torch on first use.
"""

__version__ = "0.1.0"

# train_model/evaluate_model, not train/evaluate: those names are the subpackage dpedkit.train
# and the module dpedkit.evaluate, which Python binds on the package once they are imported
__all__ = ["align_pair", "align_folder", "cut_patches", "train_model", "load_generator", "enhance_image",
           "enhance_photos", "evaluate_model", "__version__"]


def __getattr__(name: str):
    if name in __all__:
        from dpedkit import api
        return getattr(api, name)
    raise AttributeError(f"module 'dpedkit' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
