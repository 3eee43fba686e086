using GpuPool.Ptx.Syntax;

namespace GpuPool.Ptx.Engine;

/// <summary>
/// How the eight values of a register in the vector code relate (<see cref="SimdCompiler"/>): varying (eight values of
/// their own, a vector), or lane <c>l</c>'s value is the first lane's plus <c>l</c> × <see cref="Stride"/> in the
/// register's width — uniform where the stride is 0. A uniform or affine register is kept as one scalar, its first lane's
/// value: an address that steps by the access size from lane to lane is then one bounds check and one vector access.
/// </summary>
internal readonly record struct Shape(bool Varies, long Stride)
{
    public static readonly Shape Uniform = new(false, 0);

    public static readonly Shape Varying = new(true, 0);

    public static Shape Affine(long stride) => new(false, stride);

    public bool IsUniform => !Varies && Stride == 0;

    /// <summary>Two writes of one register: the same shape, or varying.</summary>
    public Shape Join(Shape other) => this == other ? this : Varying;

    public override string ToString() => Varies ? "varying" : Stride == 0 ? "uniform" : $"affine({Stride})";
}

/// <summary>
/// The shape of every register of a kernel's vector code, by name (a name declared in two scopes counts as one, which can
/// only make it varying). A forward analysis to a fixed point from "not yet written": each write gives its register the
/// shape its instruction and operands give, joined over all the writes. Integer ring operations keep a stride (add, sub,
/// mul and mad by a constant, shl by a constant, neg, not, widening and narrowing conversions); any other instruction
/// gives a uniform result from uniform operands and a varying one otherwise. Guards need no care: in the vector code a
/// guard is uniform, or the threads have left it.
/// </summary>
internal static class ShapeAnalysis
{
    public static Dictionary<string, Shape> Analyze(IReadOnlyList<PtxStatement> body)
    {
        var instructions = new List<PtxInstruction>();
        var wide = new Dictionary<string, bool?>(StringComparer.Ordinal);
        void Collect(IReadOnlyList<PtxStatement> statements)
        {
            foreach (var statement in statements)
            {
                switch (statement)
                {
                    case PtxInstruction i:
                        instructions.Add(i);
                        break;
                    case PtxBlock b:
                        Collect(b.Body);
                        break;
                    case PtxRegisterDeclaration d:
                        // Which registers may keep a stride: integers of 32 or 64 bits (a float's or a predicate's
                        // stride is meaningless, so they are uniform or varying); a name declared twice with different
                        // widths keeps none.
                        bool? width = d.Type switch
                        {
                            "b32" or "u32" or "s32" => false,
                            "b64" or "u64" or "s64" => true,
                            _ => null,
                        };
                        foreach (var name in Names(d))
                        {
                            wide[name] = wide.TryGetValue(name, out var had) && had != width ? null : width;
                        }

                        break;
                }
            }
        }

        Collect(body);
        var shapes = new Dictionary<string, Shape>(StringComparer.Ordinal);
        Shape? Of(PtxOperand operand) => operand switch
        {
            PtxRegister r when wide.ContainsKey(r.Name) => shapes.TryGetValue(r.Name, out var s) ? s : null,
            PtxRegister r => Special(r.Name),
            PtxNot n => Of(n.Operand),
            PtxAddress { Base: { } b } => Of(b),
            PtxAddress or PtxInteger or PtxFloat or PtxSymbol => Shape.Uniform,
            _ => Shape.Varying,
        };

        for (var changed = true; changed;)
        {
            changed = false;
            var next = new Dictionary<string, Shape>(StringComparer.Ordinal);
            foreach (var i in instructions)
            {
                if (i.Operands.Count == 0 || i.Opcode is "st" or "bra" or "ret" or "exit" or "bar" or "barrier" or "red" or "prefetch")
                {
                    continue;
                }

                if (i.Operands[0] is not PtxRegister d)
                {
                    // Two destinations, a vector of them: each varying (such code is not vectorised anyway).
                    foreach (var name in Registers(i.Operands[0]))
                    {
                        next[name] = Shape.Varying;
                    }

                    continue;
                }

                if (Transfer(i, Of) is not { } shape)
                {
                    continue;
                }

                if (!shape.Varies && shape.Stride != 0)
                {
                    shape = wide.GetValueOrDefault(d.Name) switch
                    {
                        false => Shape.Affine((int)shape.Stride),
                        true => shape,
                        null => Shape.Varying,
                    };
                }

                next[d.Name] = next.TryGetValue(d.Name, out var had) ? had.Join(shape) : shape;
            }

            // Monotone: a name only goes from unwritten to a shape to varying, so the loop ends.
            foreach (var (name, shape) in next)
            {
                var joined = shapes.TryGetValue(name, out var old) ? old.Join(shape) : shape;
                if (!shapes.TryGetValue(name, out var had) || had != joined)
                {
                    shapes[name] = joined;
                    changed = true;
                }
            }
        }

        return shapes;
    }

    /// <summary>Whether a conversion widens a 32-bit integer to 64 bits (a stride then needs its lanes not to wrap).</summary>
    public static bool Widens(PtxInstruction i) => i.Opcode == "cvt" && string.Join('.', i.Modifiers) is "u64.u32" or "s64.s32";

    /// <summary>A special register's shape in a group of eight consecutive threads of a block whose x size is a multiple of 8.</summary>
    public static Shape Special(string name) => name switch
    {
        "%tid.x" or "%laneid" => Shape.Affine(1),
        "%tid.y" or "%tid.z" or "%ntid.x" or "%ntid.y" or "%ntid.z" or "%ctaid.x" or "%ctaid.y" or "%ctaid.z"
            or "%nctaid.x" or "%nctaid.y" or "%nctaid.z" => Shape.Uniform,
        _ => Shape.Varying,
    };

    private static Shape? Transfer(PtxInstruction i, Func<PtxOperand, Shape?> of)
    {
        var sources = i.Operands.Skip(1).ToArray();
        var shapes = new Shape[sources.Length];
        for (var k = 0; k < sources.Length; k++)
        {
            if (of(sources[k]) is not { } s)
            {
                return null;
            }

            shapes[k] = s;
        }

        var type = i.Modifiers.LastOrDefault(m => m is "pred" or "b32" or "u32" or "s32" or "f32" or "b64" or "u64" or "s64" or "f64"
            or "b16" or "u16" or "s16" or "f16" or "b8" or "u8" or "s8");
        var integer = type is "b32" or "u32" or "s32" or "b64" or "u64" or "s64";
        bool Only(params string[] allowed) => i.Modifiers.All(m => m == type || allowed.Contains(m));
        long? Immediate(int k) => sources[k] is PtxInteger n ? n.Value : null;
        var all = shapes.All(s => s.IsUniform) ? Shape.Uniform : Shape.Varying;
        switch (i.Opcode)
        {
            case "mov" or "cvta" when sources.Length == 1:
                return shapes[0];
            case "ld" when i.Has("param"):
                return Shape.Uniform;
            case "ld":
                // One load for all eight where they share the address.
                return sources.Length == 1 && shapes[0].IsUniform ? Shape.Uniform : Shape.Varying;
            case "add" when integer && Only() && sources.Length == 2:
                return Sum(shapes[0], shapes[1], 1);
            case "sub" when integer && Only() && sources.Length == 2:
                return Sum(shapes[0], shapes[1], -1);
            case "mul" when integer && (Only("lo") && i.Has("lo") || Only("wide") && i.Has("wide")) && sources.Length == 2:
                return Product(shapes[0], shapes[1], Immediate(0), Immediate(1));
            case "mad" when integer && Only("lo") && i.Has("lo") && sources.Length == 3:
                return Sum(Product(shapes[0], shapes[1], Immediate(0), Immediate(1)), shapes[2], 1);
            case "shl" when integer && Only() && sources.Length == 2 && Immediate(1) is >= 0 and < 64 and var count:
                return shapes[0].Varies ? Shape.Varying : Shape.Affine(shapes[0].Stride << (int)count);
            case "neg" or "not" when integer && Only() && sources.Length == 1:
                // not x is -x - 1.
                return shapes[0].Varies ? Shape.Varying : Shape.Affine(-shapes[0].Stride);
            case "cvt" when sources.Length == 1 && (Widens(i) || string.Join('.', i.Modifiers) is "u32.u64" or "s32.s64" or "u32.s64" or "s32.u64"):
                return shapes[0];
            default:
                return all;
        }
    }

    private static Shape Sum(Shape a, Shape b, int sign) => a.Varies || b.Varies ? Shape.Varying : Shape.Affine(a.Stride + (sign * b.Stride));

    /// <summary>A product keeps a stride where one side is a constant; two uniform sides give a uniform product.</summary>
    private static Shape Product(Shape a, Shape b, long? constantA, long? constantB) => (a, b) switch
    {
        _ when a.Varies || b.Varies => Shape.Varying,
        _ when a.IsUniform && b.IsUniform => Shape.Uniform,
        _ when constantB is { } c => Shape.Affine(a.Stride * c),
        _ when constantA is { } c => Shape.Affine(b.Stride * c),
        _ => Shape.Varying,
    };

    private static IEnumerable<string> Names(PtxRegisterDeclaration d)
        => d.Count == 0 ? [d.Name] : Enumerable.Range(0, d.Count).Select(k => d.Name + k.ToString(System.Globalization.CultureInfo.InvariantCulture));

    private static IEnumerable<string> Registers(PtxOperand operand) => operand switch
    {
        PtxRegister r => [r.Name],
        PtxVector v => v.Elements.SelectMany(Registers),
        PtxPredicatePair p => [.. Registers(p.First), .. Registers(p.Second)],
        PtxNot n => Registers(n.Operand),
        _ => [],
    };
}
