"""Circuit discovery: the edge graph, edge patching, EAP, EAP-IG, ACDC, path patching and circuits."""
