-- The 1 MiB body for nginx in bench/run: a Lua string made once, when the
-- worker first requires this module.
return string.rep("x", 1024 * 1024)
