-- Workers keep a bounded number of templates in memory (LOGCANARY_MAX_TEMPLATES). A line
-- that matches none of them may belong to one they evicted: before creating a new
-- template they look for stored ones the line could join, by token count and second
-- token (how the miner routes lines), with db::templates::route_candidates.
CREATE INDEX templates_routing
    ON templates ((cardinality(string_to_array(template, ' '))), (split_part(template, ' ', 2)));
