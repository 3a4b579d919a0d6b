# Solutions to the exercises of 01-rest-request-response.ipynb, one "# %%" section per exercise cell.
# ruff: noqa: F821 - each section runs inside the lesson, which defines lk, json, api, merge, note_url,
# rest_lab earlier.

# %% exercise 1
# Send back the ETag of the current copy: "only if it changed", and it has not.
my_headers = {"If-None-Match": api.get(note_url).headers["ETag"]}
lk.check.conditional_get(note_url, my_headers)

# %% exercise 2
# Send each idempotent verb twice to a fresh note (DELETE last); keep the verb whose two statuses differ.
twice = api.post("/api/notes", json={"title": "twice"}).headers["Location"]
requests = {"PUT": {"json": {"title": "twice", "body": "same"}},
            "PATCH": {"data": json.dumps({"body": "same"}), "headers": merge},
            "DELETE": {}}
statuses = {verb: [api.request(verb, twice, **kw).status for _ in range(2)]
            for verb, kw in requests.items()}
print(statuses)
(my_verb,) = [verb for verb, (first, second) in statuses.items() if first != second]
lk.check.idempotent_but_status_changes(my_verb)

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
