"""Print a digest of the extractive summaries of the conversations in the JSON file argv[1]."""

import hashlib
import json
import sys

from langswarm.core.memory._summarizers import ExtractiveSummarizer
from langswarm.core.memory.interfaces import Message

with open(sys.argv[1], encoding="utf-8") as file:
    data = json.load(file)
digest = hashlib.sha256()
for conversation in data["conversations"]:
    messages = [Message(**m) for m in conversation["messages"]]
    for budget in (60, 200, 400):
        text = ExtractiveSummarizer().summarize_sync(messages, previous=None, max_tokens=budget)
        digest.update(text.encode())
print(digest.hexdigest())
