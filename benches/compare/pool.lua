-- wrk script: send each request with the next token of a pool (KG_TOKENS, one per line);
-- without KG_TOKENS, plain GETs. KG_PATH overrides the path of the URL given to wrk.
local tokens = {}
local file = os.getenv("KG_TOKENS")
if file and file ~= "" then
  for line in io.lines(file) do
    if line ~= "" then tokens[#tokens + 1] = "Bearer " .. line end
  end
end
local i = 0
request = function()
  if #tokens == 0 then
    return wrk.format("GET", nil)
  end
  i = i % #tokens + 1
  return wrk.format("GET", nil, { ["Authorization"] = tokens[i] })
end
