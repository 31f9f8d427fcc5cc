using System.Globalization;
using System.Text;

namespace QwenNats.Tests.Infrastructure;

/// <summary>
/// A small GBNF reader and backtracking matcher for the tests: it reads the constructs llama.cpp's grammar
/// format has (literals, character classes, rule references, groups, alternatives, <c>? * +</c> and
/// <c>{m}</c>, <c>{m,n}</c>, <c>{m,}</c>), refuses anything else and references to undefined rules, and says
/// whether a whole text matches. It lets the converter's grammars be checked against texts without a model.
/// </summary>
public sealed class Gbnf
{
    private abstract record Node;
    private sealed record Lit(string Text) : Node;
    private sealed record Class(List<(int Lo, int Hi)> Ranges, bool Negated) : Node;
    private sealed record Ref(string Name) : Node;
    private sealed record Seq(List<Node> Items) : Node;
    private sealed record Alt(List<Node> Options) : Node;
    private sealed record Rep(Node Item, int Min, int Max) : Node;

    private readonly Dictionary<string, Node> _rules = new(StringComparer.Ordinal);
    private string _s = "";
    private int _p;

    public IReadOnlyCollection<string> RuleNames => _rules.Keys;

    public static Gbnf Parse(string grammar)
    {
        var g = new Gbnf { _s = grammar };
        g.ReadAll();
        return g;
    }

    private void ReadAll()
    {
        var refs = new List<string>();
        Skip(newlines: true);
        while (_p < _s.Length)
        {
            var name = Name();
            Skip(false);
            Expect("::=");
            Skip(true);
            if (!_rules.TryAdd(name, Alternatives(refs)))
                throw new FormatException($"rule '{name}' is defined twice");
            Skip(true);
        }
        foreach (var r in refs.Where(r => !_rules.ContainsKey(r)))
            throw new FormatException($"rule '{r}' is used but not defined");
    }

    private Node Alternatives(List<string> refs)
    {
        var options = new List<Node> { Sequence(refs) };
        while (_p < _s.Length && _s[_p] == '|')
        {
            _p++;
            Skip(true);
            options.Add(Sequence(refs));
        }
        return options.Count == 1 ? options[0] : new Alt(options);
    }

    private Node Sequence(List<string> refs)
    {
        var items = new List<Node>();
        while (_p < _s.Length && _s[_p] is not ('|' or ')' or '\n'))
        {
            Node item;
            var c = _s[_p];
            if (c == '"')
            {
                _p++;
                var sb = new StringBuilder();
                while (_s[_p] != '"')
                    sb.Append(char.ConvertFromUtf32(Char()));
                _p++;
                item = new Lit(sb.ToString());
            }
            else if (c == '[')
            {
                _p++;
                var negated = _s[_p] == '^';
                if (negated) _p++;
                var ranges = new List<(int, int)>();
                while (_s[_p] != ']')
                {
                    var lo = Char();
                    var hi = lo;
                    if (_s[_p] == '-' && _s[_p + 1] != ']')
                    {
                        _p++;
                        hi = Char();
                    }
                    ranges.Add((lo, hi));
                }
                _p++;
                item = new Class(ranges, negated);
            }
            else if (c == '(')
            {
                _p++;
                Skip(true);
                item = Alternatives(refs);
                Expect(")");
            }
            else if (char.IsAsciiLetterOrDigit(c) || c == '-')
            {
                var name = Name();
                refs.Add(name);
                item = new Ref(name);
            }
            else
            {
                throw new FormatException($"unexpected '{c}' at {_p}");
            }
            item = Postfix(item);
            items.Add(item);
            Skip(false);
        }
        return items.Count == 1 ? items[0] : new Seq(items);
    }

    private Node Postfix(Node item)
    {
        if (_p >= _s.Length) return item;
        switch (_s[_p])
        {
            case '?': _p++; return new Rep(item, 0, 1);
            case '*': _p++; return new Rep(item, 0, int.MaxValue);
            case '+': _p++; return new Rep(item, 1, int.MaxValue);
            case '{':
                var end = _s.IndexOf('}', _p);
                var parts = _s[(_p + 1)..end].Split(',');
                _p = end + 1;
                var min = int.Parse(parts[0], CultureInfo.InvariantCulture);
                var max = parts.Length == 1 ? min : parts[1].Length == 0 ? int.MaxValue : int.Parse(parts[1], CultureInfo.InvariantCulture);
                return new Rep(item, min, max);
            default: return item;
        }
    }

    private int Char()
    {
        var c = _s[_p++];
        if (c != '\\')
        {
            if (char.IsHighSurrogate(c)) return char.ConvertToUtf32(c, _s[_p++]);
            return c;
        }
        var e = _s[_p++];
        switch (e)
        {
            case 'x': _p += 2; return int.Parse(_s.AsSpan(_p - 2, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            case 'u': _p += 4; return int.Parse(_s.AsSpan(_p - 4, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            case 'n': return '\n';
            case 'r': return '\r';
            case 't': return '\t';
            case '\\' or '"' or '[' or ']': return e;
            default: throw new FormatException($"unknown escape \\{e}");
        }
    }

    private string Name()
    {
        var start = _p;
        while (_p < _s.Length && (char.IsAsciiLetterOrDigit(_s[_p]) || _s[_p] == '-')) _p++;
        if (_p == start) throw new FormatException($"expected a rule name at {_p}");
        return _s[start.._p];
    }

    private void Expect(string text)
    {
        if (string.CompareOrdinal(_s, _p, text, 0, text.Length) != 0) throw new FormatException($"expected '{text}' at {_p}");
        _p += text.Length;
    }

    private void Skip(bool newlines)
    {
        while (_p < _s.Length && (_s[_p] == ' ' || _s[_p] == '\t' || (newlines && _s[_p] is '\n' or '\r'))) _p++;
    }

    /// <summary>Whether the whole of <paramref name="text"/> matches the rule <paramref name="root"/>.</summary>
    public bool Matches(string text, string root = "root")
    {
        var runes = text.EnumerateRunes().Select(r => r.Value).ToArray();
        return Ends(_rules[root], runes, 0).Contains(runes.Length);
    }

    private IEnumerable<int> Ends(Node node, int[] t, int pos)
    {
        switch (node)
        {
            case Lit lit:
            {
                var runes = lit.Text.EnumerateRunes().Select(r => r.Value).ToArray();
                if (pos + runes.Length <= t.Length && runes.AsSpan().SequenceEqual(t.AsSpan(pos, runes.Length)))
                    yield return pos + runes.Length;
                break;
            }
            case Class cls:
                if (pos < t.Length && cls.Ranges.Any(r => t[pos] >= r.Lo && t[pos] <= r.Hi) != cls.Negated)
                    yield return pos + 1;
                break;
            case Ref r:
                foreach (var e in Ends(_rules[r.Name], t, pos)) yield return e;
                break;
            case Alt alt:
                foreach (var e in alt.Options.SelectMany(o => Ends(o, t, pos)).Distinct()) yield return e;
                break;
            case Seq seq:
                foreach (var e in SeqEnds(seq.Items, 0, t, pos).Distinct()) yield return e;
                break;
            case Rep rep:
                foreach (var e in RepEnds(rep, 0, t, pos).Distinct()) yield return e;
                break;
        }
    }

    private IEnumerable<int> SeqEnds(List<Node> items, int i, int[] t, int pos)
    {
        if (i == items.Count)
        {
            yield return pos;
            yield break;
        }
        foreach (var mid in Ends(items[i], t, pos).ToList())
            foreach (var e in SeqEnds(items, i + 1, t, mid))
                yield return e;
    }

    private IEnumerable<int> RepEnds(Rep rep, int count, int[] t, int pos)
    {
        if (count >= rep.Min)
            yield return pos;
        if (count == rep.Max)
            yield break;
        foreach (var mid in Ends(rep.Item, t, pos).ToList())
            if (mid > pos || count < rep.Min)
                foreach (var e in RepEnds(rep, count + 1, t, mid))
                    yield return e;
    }
}
