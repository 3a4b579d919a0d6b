# Solutions to the exercises of 01-rest-request-response.ipynb, one "# %%" section per exercise cell.
# ruff: noqa: F821 - each section runs inside the lesson, which defines lk, json, api, merge, note_url,
# effects and rest_lab earlier.

# %% exercise 1
# Send back the ETag of the current copy: "only if it changed", and it has not.
my_headers = {"If-None-Match": api.get(note_url).headers["ETag"]}
lk.check.conditional_get(note_url, my_headers)

# %% exercise 2
# The idempotency experiment above: the one verb whose repetition changed the server again.
(my_verb,) = rest_lab.non_idempotent_verbs(effects)
lk.check.non_idempotent_verb(my_verb)

# %% exercise 3
# Write from the stale read (412 instead of a lost update), then read again and retry with the fresh ETag.
conflict = rest_lab.stale_write(lab)
me = lk.rest(lab)
refused = me.patch(conflict.path, data=json.dumps({"votes": conflict.votes_seen + 1}),
                   headers={**merge, "If-Match": conflict.stale_etag})
fresh = me.get(conflict.path)
retried = me.patch(conflict.path, data=json.dumps({"votes": fresh.json()["votes"] + 1}),
                   headers={**merge, "If-Match": fresh.headers["ETag"]})
print("first try:", refused.status, "| retry:", retried.status)
lk.check.recovered_from_412(conflict, me)
