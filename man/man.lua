-- pandoc filter that turns the Markdown of docs/ into a man page (man/CMakeLists.txt runs it).
-- The Markdown keeps the layout of the other docs (a level-1 title, level-2 sections); a man page
-- has no title heading (.TH comes from the metadata) and its sections are .SH in capitals. Links
-- between the docs name the installed document or man page instead, and table columns are sized
-- to fit an 80-column terminal, so that `man --warnings` stays quiet.

local text = pandoc.text
local utils = pandoc.utils

-- The docs that are man pages too, by their file name in docs/.
local MAN_PAGES = {
  ["workflow-format.md"] = "taskhub-workflow(5)",
  ["taskhub.toml.5.md"] = "taskhub.toml(5)",
  ["taskhubctl.1.md"] = "taskhubctl(1)",
  ["taskhubd.8.md"] = "taskhubd(8)",
}

-- Level 1 is the document's title (the page's .TH says it): dropped. Level 2 becomes .SH, in
-- capitals as man pages have them; deeper levels move up one.
local function header(h)
  if h.level == 1 then return {} end
  h.level = h.level - 1
  if h.level == 1 then
    h.content = pandoc.walk_inline(pandoc.Span(h.content), {
      Str = function(s) return pandoc.Str(text.upper(s.text)) end,
      Code = function(c) return pandoc.Str(text.upper(c.text)) end,
    }).content
  end
  return h
end

-- [text](file.md#anchor): the text, then where to read on: the man page when the document is
-- one, else the document's name (the pages say in SEE ALSO that the documents are installed
-- in the docdir). [text](#anchor) within the page: the text alone. Web links
-- keep their address.
local function link(l)
  local target = l.target
  if target:match("^%a[%w+.-]*:") then
    if utils.stringify(l.content) == target then return l.content end
    local out = l.content:clone()
    out:insert(pandoc.Str(" <" .. target .. ">"))
    return out
  end
  if target:sub(1, 1) == "#" or target == "" then return l.content end
  local file = target:gsub("#.*$", ""):gsub("^.*/", "")
  local shown = utils.stringify(l.content)
  if shown == file or shown == MAN_PAGES[file] or shown:find(file, 1, true) then return l.content end
  local out = l.content:clone()
  local where = MAN_PAGES[file] or file
  out:insert(pandoc.Str(" (" .. where .. ")"))
  return out
end

-- A table becomes a list, one item per row (as man pages lay out keys and options): the first
-- cell is the item, the other cells follow it, each named by its column's heading ("type:
-- string; default: 0"); the last column, the long text of most tables, is a paragraph of its own,
-- unnamed when it is the meaning of the row. tbl would squeeze wide tables into an 80-column
-- terminal badly, and warn about it.
local function plain(blocks)
  local out = pandoc.List()
  for _, b in ipairs(blocks) do
    if b.t == "Plain" or b.t == "Para" then
      if #out > 0 then out:insert(pandoc.Space()) end
      out:extend(b.content)
    else
      return nil
    end
  end
  return out
end

local UNNAMED = {meaning = true, description = true, ["what it does"] = true}

local function table_(t)
  local headings = {}
  if #t.head.rows > 0 then
    for i, cell in ipairs(t.head.rows[1].cells) do headings[i] = utils.stringify(cell.contents) end
  end
  local n = #t.colspecs
  local items = pandoc.List()
  local function named(i, inlines)
    local h = headings[i] or ""
    if h == "" or (i == n and (n == 2 or UNNAMED[h:lower()])) then return inlines end
    local out = pandoc.List({pandoc.Emph({pandoc.Str(h .. ":")}), pandoc.Space()})
    out:extend(inlines)
    return out
  end
  for _, body in ipairs(t.bodies) do
    for _, row in ipairs(body.body) do
      local term = plain(row.cells[1].contents) or pandoc.List({pandoc.Str(utils.stringify(row.cells[1].contents))})
      local short, blocks = pandoc.List(), pandoc.List()
      for i = 2, n do
        local cell = row.cells[i]
        local inl = cell and plain(cell.contents)
        if inl and #inl > 0 then
          if i < n then
            if #short > 0 then short:extend({pandoc.Str(";"), pandoc.Space()}) end
            short:extend(named(i, inl))
          else
            blocks:insert(pandoc.Para(named(i, inl)))
          end
        elseif cell and #cell.contents > 0 then
          blocks:extend(cell.contents)
        end
      end
      if #short > 0 then blocks:insert(1, pandoc.Para(short)) end
      if #blocks == 0 then blocks:insert(pandoc.Para({pandoc.Str("")})) end
      items:insert({term, {blocks}})
    end
  end
  local out = pandoc.List()
  if t.caption and t.caption.long and #t.caption.long > 0 then out:extend(t.caption.long) end
  out:insert(pandoc.DefinitionList(items))
  return out
end

-- A list whose every item starts with `code` and a colon ("- `--limit` *N*: at most N runs")
-- lists options or keys: it becomes a list of terms, as man pages show options.
local function termList(list)
  local items = pandoc.List()
  for _, item in ipairs(list.content) do
    local first = item[1]
    if not first or (first.t ~= "Plain" and first.t ~= "Para") or first.content[1] == nil
        or first.content[1].t ~= "Code" then
      return nil
    end
    local term, rest, found = pandoc.List(), pandoc.List(), false
    for _, inl in ipairs(first.content) do
      if found then
        rest:insert(inl)
      elseif inl.t == "Str" and inl.text:sub(-1) == ":" then
        found = true
        if #inl.text > 1 then term:insert(pandoc.Str(inl.text:sub(1, -2))) end
      else
        term:insert(inl)
      end
    end
    if not found then return nil end
    while rest[1] and (rest[1].t == "Space" or rest[1].t == "SoftBreak") do rest:remove(1) end
    local blocks = pandoc.List({pandoc.Para(rest)})
    for i = 2, #item do blocks:insert(item[i]) end
    items:insert({term, {blocks}})
  end
  return pandoc.DefinitionList(items)
end

-- Left-aligned text without hyphenation: the pages are full of paths, keys and narrow table
-- columns, which justification and hyphenation would tear apart.
local function pandoc_(doc)
  doc.blocks:insert(1, pandoc.RawBlock("man", ".nh\n.ad l"))
  return doc
end

return {
  {Pandoc = pandoc_},
  {Header = header, Link = link, Table = table_, BulletList = termList},
}
