-- What a search of the archive covers of a message's text (docs/contract.md#archive):
-- its own text as stored (quoted lines are already left out), without the signature
-- after a "-- " line, and no more than its first 16,384 characters. Search vectors and
-- snippets are both made from it; vectors made before this rule keep what they cover
-- until the message is indexed again.
create function archive_searched_text(body text) returns text
    language sql immutable parallel safe strict
    return left(split_part(E'\n' || body, E'\n-- \n', 1), 16384);
