"""Pictures: ``ladd show``'s drawings of a file (:mod:`.show`) and the demo's results page
(:mod:`.demo_figures`), drawn with Pillow."""
