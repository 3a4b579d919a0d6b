# Solutions to the exercises of 01-rest-request-response.ipynb, one "# %%" section per exercise cell.
# ruff: noqa: F821 - each section runs inside the lesson, which defines lk, json, api, merge, note_url,
# rest_lab and lab earlier.

# %% exercise 1
# Send back the date of the current copy: "only if it changed since then", and it has not.
my_headers = {"If-Modified-Since": api.get(note_url).headers["Last-Modified"]}
lk.check.conditional_get(note_url, my_headers, validator="date")

# %% exercise 2
# The first PUT changes the note (and its ETag); the repeated one names the old ETag: 412.
mine = api.post("/api/notes", json={"title": "twice"}).headers["Location"]
etag = api.get(mine).headers["ETag"]
statuses = [api.put(mine, json={"title": "twice, replaced"}, headers={"If-Match": etag}).status
            for _ in range(2)]
print(statuses)
my_status = statuses[1]
lk.check.second_conditional_put(my_status)

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
