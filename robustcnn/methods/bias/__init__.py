"""The algorithms of the bias audits: groups from dataset attributes and the measures over them,
what the data alone teaches (association, shortcut probe, near-duplicates), and confident learning."""
