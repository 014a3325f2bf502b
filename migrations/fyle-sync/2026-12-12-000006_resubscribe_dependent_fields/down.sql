-- Nothing to undo: the next retry re-registers every subscription either way.
SELECT 1;
