-- strata catalog, version 4 (issue 14): what an object keeps beyond its headers, as JSON
-- (the sizes and checksums of its parts, the multipart upload that made it, its checksum),
-- and each uploaded part's checksum ("ALGORITHM:base64", or '' when the client sent none).
ALTER TABLE objects ADD COLUMN details TEXT NOT NULL DEFAULT '{}';
ALTER TABLE parts ADD COLUMN checksum TEXT NOT NULL DEFAULT '';
