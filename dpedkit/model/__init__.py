"""The networks and everything that loads, stores or runs them, shared by train, enhance,
evaluate and export: :mod:`layers` (a network as a layer description, and the walk that
runs it), :mod:`networks` (DPED generator — its description — and discriminator), :mod:`vgg`
(VGG-19 content features), :mod:`checkpoint` (our ``.pt`` files), :mod:`tfbundle` (the
official TensorFlow checkpoints, read without TensorFlow), :mod:`generator` (load a
generator from either), :mod:`inference` (apply it to a photo), :mod:`device`; and the
learned ISPs for RAW mosaics: :mod:`pynet`, :mod:`microisp` (with :mod:`microisp_tf`, the
published checkpoint's variables).
"""
