-- Argo CD health check for Causeway's Bridge, Plugin and WorkerPool (group causeway.dev).
-- The same script serves the three kinds: each reports a `Ready` condition.
--   no status yet, or a status of an older generation   -> Progressing
--   Ready=True                                         -> Healthy
--   Ready not True, reason Pending                     -> Progressing
--   Ready not True, reason Suspended                   -> Suspended
--   a Bridge being deleted that drains (status.deletion, reason Draining) -> Progressing
--   Ready not True, any other reason                   -> Degraded (reason: message)
-- Install it as resource.customizations.health.causeway.dev_<Kind> (docs/operator.md).
-- Written for Lua 5.1 (Argo CD's gopher-lua); tested with lua5.4 (crds/tests/argocd.rs).
local hs = { status = "Progressing", message = "Waiting for the operator" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
if obj.status.deletion ~= nil then
  local d = obj.status.deletion
  hs.message = "Draining: " .. tostring(d.pendingJobs or "unknown") .. " jobs left"
  if d.deadline ~= nil then
    hs.message = hs.message .. ", until " .. d.deadline
  end
  return hs
end
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then
    local text = (c.reason or "") .. ": " .. (c.message or "")
    if c.status == "True" then
      hs.status = "Healthy"
      hs.message = c.message or "Ready"
    elseif c.reason == "Pending" or c.reason == "Draining" then
      hs.status = "Progressing"
      hs.message = text
    elseif c.reason == "Suspended" then
      hs.status = "Suspended"
      hs.message = text
    else
      hs.status = "Degraded"
      hs.message = text
    end
    return hs
  end
end
return hs
