"""Graph passes: shape inference, expansion of composites, autodiff, fusion, simplification, rematerialisation."""
