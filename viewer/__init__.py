"""See a layout: `vlamix view` writes a Rerun recording or a self-contained web page."""
