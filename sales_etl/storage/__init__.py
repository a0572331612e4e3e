"""The blob edge: the container and its folders (container), the blob being processed
(blobs), ETag-safe moves (moves), reachability (preflight) and pasted blob names
(blobpath). The only place the storage SDK is used. May import core, stages, config and
datasets."""
