using GpuPool.Ptx.Syntax;

namespace GpuPool.Ptx.Engine;

/// <summary>
/// Which registers hold a value still to be read, before and after each instruction of a kernel: a thread that waits at
/// a collective instruction hands over and takes back only those, not every register the kernel declares (a tiled
/// kernel declares dozens, and three or four live across its barriers).
/// </summary>
/// <remarks>
/// Registers are numbered as <see cref="KernelCompiler"/> declares them: the carry flag first, then each declaration in
/// the order the body gives them, nested blocks included. An instruction writes its first operand unless it is one of the
/// few that only read (stores, reductions, branches, barriers); a guarded write may not happen, so it keeps the old value
/// live. Anything this analysis does not understand counts as a read, which can only make more registers live.
/// </remarks>
internal sealed class Liveness
{
    private readonly Dictionary<PtxInstruction, (ulong[] In, ulong[] Out)> _sets = new(ReferenceEqualityComparer.Instance);

    private Liveness(int registers) => Registers = registers;

    public int Registers { get; }

    /// <summary>The carry flag's number: the compiler declares it before anything else.</summary>
    public const int CarryFlag = 0;

    /// <summary>The registers live where <paramref name="instruction"/> starts (its reads included).</summary>
    public IEnumerable<int> LiveIn(PtxInstruction instruction) => Members(_sets[instruction].In);

    /// <summary>The registers live where <paramref name="instruction"/> ends (its writes that are read later included).</summary>
    public IEnumerable<int> LiveOut(PtxInstruction instruction) => Members(_sets[instruction].Out);

    public static Liveness Analyze(IReadOnlyList<PtxStatement> body)
    {
        var walk = new Walk();
        walk.Body(body);
        var liveness = new Liveness(walk.Count);
        var n = walk.Instructions.Count;
        var words = (walk.Count + 63) / 64;
        var uses = new ulong[n][];
        var defs = new ulong[n][];
        var successors = new int[n][];
        for (var k = 0; k < n; k++)
        {
            var (i, reads, writes) = walk.Instructions[k];
            uses[k] = Set(words, reads);
            defs[k] = Set(words, writes);
            successors[k] = Successors(walk, k, i);
        }

        var live = new (ulong[] In, ulong[] Out)[n];
        for (var k = 0; k < n; k++)
        {
            live[k] = (new ulong[words], new ulong[words]);
        }

        // Backward to a fixed point: out = ∪ in(successors); in = uses ∪ (out − defs).
        var changed = true;
        while (changed)
        {
            changed = false;
            for (var k = n - 1; k >= 0; k--)
            {
                var (liveIn, liveOut) = live[k];
                for (var w = 0; w < words; w++)
                {
                    var o = 0UL;
                    foreach (var s in successors[k])
                    {
                        o |= live[s].In[w];
                    }

                    var i = uses[k][w] | (o & ~defs[k][w]);
                    if (o != liveOut[w] || i != liveIn[w])
                    {
                        (liveOut[w], liveIn[w]) = (o, i);
                        changed = true;
                    }
                }
            }
        }

        for (var k = 0; k < n; k++)
        {
            liveness._sets[walk.Instructions[k].Instruction] = live[k];
        }

        return liveness;
    }

    private static int[] Successors(Walk walk, int k, PtxInstruction i)
    {
        var next = k + 1 < walk.Instructions.Count ? [k + 1] : Array.Empty<int>();
        switch (i.Opcode)
        {
            case "bra":
                var target = i.Operands.Count > 0 && i.Operands[0] is PtxSymbol s && walk.Labels.TryGetValue(s.Name, out var t) ? t : -1;
                if (target < 0)
                {
                    // A branch this analysis cannot follow: the compiler refuses it, but be safe and go everywhere.
                    return [.. Enumerable.Range(0, walk.Instructions.Count)];
                }

                var to = target < walk.Instructions.Count ? [target] : Array.Empty<int>();
                return i.Guard is null ? to : [.. to, .. next];
            case "ret" or "exit" or "trap" when i.Guard is null:
                return [];
            default:
                return next;
        }
    }

    private static ulong[] Set(int words, List<int> members)
    {
        var set = new ulong[words];
        foreach (var m in members)
        {
            set[m >> 6] |= 1UL << (m & 63);
        }

        return set;
    }

    private static IEnumerable<int> Members(ulong[] set)
    {
        for (var w = 0; w < set.Length; w++)
        {
            for (var bits = set[w]; bits != 0; bits &= bits - 1)
            {
                yield return (w << 6) + System.Numerics.BitOperations.TrailingZeroCount(bits);
            }
        }
    }

    /// <summary>The body flattened: each instruction with the registers it reads and writes, and where each label points.</summary>
    private sealed class Walk
    {
        private readonly List<Dictionary<string, int>> _scopes = [new(StringComparer.Ordinal) { ["%cc"] = CarryFlag }];

        public int Count { get; private set; } = 1;

        public List<(PtxInstruction Instruction, List<int> Reads, List<int> Writes)> Instructions { get; } = [];

        public Dictionary<string, int> Labels { get; } = new(StringComparer.Ordinal);

        public void Body(IReadOnlyList<PtxStatement> body)
        {
            foreach (var statement in body)
            {
                switch (statement)
                {
                    case PtxRegisterDeclaration r:
                        var names = r.Count == 0 ? [r.Name] : Enumerable.Range(0, r.Count).Select(k => r.Name + k.ToString(System.Globalization.CultureInfo.InvariantCulture));
                        foreach (var name in names)
                        {
                            _scopes[^1][name] = Count++;
                        }

                        break;
                    case PtxLabel l:
                        Labels[l.Name] = Instructions.Count;
                        break;
                    case PtxBlock b:
                        _scopes.Add(new(StringComparer.Ordinal));
                        Body(b.Body);
                        _scopes.RemoveAt(_scopes.Count - 1);
                        break;
                    case PtxInstruction i:
                        Add(i);
                        break;
                }
            }
        }

        private void Add(PtxInstruction i)
        {
            var reads = new List<int>();
            var writes = new List<int>();
            if (i.Guard is not null && Find(i.Guard.Predicate) is { } guard)
            {
                reads.Add(guard);
            }

            if (i.Opcode is "addc" or "subc" or "madc" || i.Has("cc"))
            {
                reads.Add(CarryFlag);
            }

            for (var k = 0; k < i.Operands.Count; k++)
            {
                if (k == 0 && WritesFirst(i))
                {
                    // A guarded write may not happen: the register keeps its old value, so nothing is killed.
                    Registers(i.Operands[0], i.Guard is null ? writes : reads);
                }
                else
                {
                    Registers(i.Operands[k], reads);
                }
            }

            Instructions.Add((i, reads, writes));
        }

        /// <summary>Whether the instruction's first operand is its destination (and only written).</summary>
        private static bool WritesFirst(PtxInstruction i) => i.Opcode switch
        {
            "st" or "red" or "bra" or "ret" or "exit" or "membar" or "fence" or "prefetch" or "prefetchu" or "nanosleep"
                or "pmevent" or "brkpt" or "trap" or "call" => false,
            "bar" or "barrier" => i.Has("red"),
            "mov" or "ld" or "ldu" or "add" or "sub" or "mul" or "div" or "rem" or "min" or "max" or "and" or "or" or "xor"
                or "addc" or "subc" or "mad" or "fma" or "madc" or "sad" or "mul24" or "mad24" or "neg" or "abs" or "not"
                or "cnot" or "popc" or "clz" or "brev" or "shl" or "shr" or "rcp" or "sqrt" or "rsqrt" or "ex2" or "lg2"
                or "sin" or "cos" or "tanh" or "setp" or "testp" or "set" or "dp4a" or "dp2a" or "selp" or "slct" or "copysign" or "cvt" or "cvta" or "bfe" or "bfi" or "prmt" or "bfind"
                or "atom" or "shfl" or "vote" or "match" or "redux" or "activemask" => true,
            _ => false,
        };

        private void Registers(PtxOperand operand, List<int> into)
        {
            switch (operand)
            {
                case PtxRegister r when Find(r.Name) is { } n:
                    into.Add(n);
                    break;
                case PtxAddress { Base: { } b }:
                    Registers(b, into);
                    break;
                case PtxNot n:
                    Registers(n.Operand, into);
                    break;
                case PtxPredicatePair p:
                    Registers(p.First, into);
                    Registers(p.Second, into);
                    break;
                case PtxVector v:
                    v.Elements.ToList().ForEach(e => Registers(e, into));
                    break;
                case PtxList l:
                    l.Elements.ToList().ForEach(e => Registers(e, into));
                    break;
                case PtxBracket b:
                    b.Elements.ToList().ForEach(e => Registers(e, into));
                    break;
            }
        }

        private int? Find(string name)
        {
            for (var s = _scopes.Count - 1; s >= 0; s--)
            {
                if (_scopes[s].TryGetValue(name, out var n))
                {
                    return n;
                }
            }

            return null;
        }
    }
}
