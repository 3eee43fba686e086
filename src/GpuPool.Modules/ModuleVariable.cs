namespace GpuPool.Modules;

/// <summary>Where a module-scope variable lives: <c>__device__</c> (.global) or <c>__constant__</c> (.const).</summary>
public enum VariableSpace
{
    Global,
    Const,
}

/// <summary>
/// A module-scope variable (<c>__device__</c> or <c>__constant__</c>): what cuModuleGetGlobal answers for, and what a
/// backend allocates when it loads the module. <see cref="Initializer"/> is <see cref="Size"/> bytes, or empty for a
/// variable that starts zeroed.
/// </summary>
public sealed record ModuleVariable(string Name, long Size, int Align, VariableSpace Space, byte[] Initializer);
