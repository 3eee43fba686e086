using GpuPool.Ptx.Syntax;

namespace GpuPool.Ptx.Tests.Syntax;

/// <summary>Operands compared by what they say: the records' own equality compares their lists by reference.</summary>
internal sealed class OperandComparer : IEqualityComparer<PtxOperand>
{
    public static readonly OperandComparer Instance = new();

    public bool Equals(PtxOperand? x, PtxOperand? y) => x?.GetType() == y?.GetType() && x?.ToString() == y?.ToString()
        && (x is not PtxInteger a || a == (PtxInteger)y!) && (x is not PtxFloat f || f == (PtxFloat)y!);

    public int GetHashCode(PtxOperand obj) => obj.ToString().GetHashCode(StringComparison.Ordinal);
}
