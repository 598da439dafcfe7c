-- Shell commands and files for specs that build and install (build_spec,
-- luarocks_spec).
local M = {}

-- Runs a shell command; returns its output (stdout and stderr) and whether
-- it exited 0.
function M.sh(cmd)
  local proc = assert(io.popen("(" .. cmd .. ") 2>&1"))
  local out = proc:read("a")
  local ok = proc:close()
  return out, ok == true
end

function M.exists(path)
  local fh = io.open(path, "rb")
  if fh then fh:close() end
  return fh ~= nil
end

return M
