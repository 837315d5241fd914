// The turn tree as the page shows it: for a turn of the active path, its alternatives (the turns with the same
// parent, made by retries and edits) in the order they were written, and the branch that leads to each.

// transcript: GET /v1/conversations/{id}/transcript. index: the turn's place on the active path.
// Returns { ids: sibling turn ids, oldest first; current: the active one's index in ids; branch: id -> branch number }.
export function siblings(transcript, index) {
  const turn = transcript.turns[index];
  const branch = new Map();
  for (const found of transcript.branches || []) {
    const other = found.turns[index];
    if (!other || other.parent_id !== turn.parent_id) continue;
    // The newest branch through a turn is the one a person most likely left it on.
    branch.set(other.id, Math.max(branch.get(other.id) ?? 0, found.number));
  }
  if (!branch.has(turn.id)) branch.set(turn.id, null);
  const ids = [...branch.keys()].sort((a, b) => a - b);
  return { ids, current: ids.indexOf(turn.id), branch };
}
