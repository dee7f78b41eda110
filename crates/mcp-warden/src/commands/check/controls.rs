//! The control IDs of the checklist's appendix (`CHECKLIST.md`), in its order, and the ones no
//! gateway configuration can enforce, with the reason. A test compares the list with the
//! appendix when the shared checklist is present.

/// Every control ID `check` reports, in the appendix's order.
pub(crate) const IDS: &[&str] = &[
    "API-1", "API-2", "API-3", "AUTH-1", "AUTH-2", "AUTH-3", "AUTH-4", "AUTH-5", "AUTH-6",
    "LIFE-1", "LIFE-2", "LIFE-3", "LIFE-4", "LIFE-5", "RUN-1", "RUN-2", "RUN-3", "RUN-4", "RUN-5",
    "INT-1", "INT-2", "INT-3", "SUP-1", "SUP-2", "SUP-3", "SUP-4", "MON-1", "MON-2", "MON-3",
    "MON-4", "MON-5", "MON-6", "ISO-1", "ISO-2", "ISO-3", "PLAT-1", "PLAT-2", "PLAT-3", "PLAT-4",
    "DATA-1", "DATA-2", "DATA-3", "DATA-4", "DATA-5", "RES-1", "RES-2", "RES-3", "RES-4", "TOOL-1",
    "TOOL-2", "TOOL-3", "TOOL-4", "TOOL-5", "TOOL-6", "TOOL-7", "TOOL-8", "TOOL-9", "UX-1", "UX-2",
    "UX-3", "UX-4", "UX-5", "UX-6", "AI-1", "AI-2", "AI-3", "STORE-1", "STORE-2", "APP-1", "APP-2",
    "APP-3", "CAUTH-1", "CAUTH-2", "CAUTH-3", "MGMT-1", "MGMT-2", "MGMT-3", "MGMT-4", "MGMT-5",
    "MGMT-6", "MGMT-7", "MGMT-8", "MGMT-9", "MGMT-10", "MGMT-11", "MGMT-12", "MGMT-13", "PROMPT-1",
    "PROMPT-2", "PROMPT-3", "PROMPT-4", "PROMPT-5", "PROMPT-6", "PROMPT-7", "PROMPT-8", "PROMPT-9",
    "LOG-1", "LOG-2", "LOG-3", "TLS-1", "TLS-2", "TLS-3", "TLS-4", "TOKEN-1", "AUTO-1", "AUTO-2",
    "AUTO-3", "AUTO-4", "SAMP-1", "SAMP-2", "SAMP-3", "SAMP-4", "SAMP-5", "SAMP-6", "LLM-1",
    "LLM-2", "LLM-3", "LLM-4", "MM-1", "MULTI-1", "MULTI-2", "MULTI-3", "CRYPTO-1", "CRYPTO-2",
    "CRYPTO-3", "CRYPTO-4", "CRYPTO-5", "CRYPTO-6", "CRYPTO-7",
];

/// Controls outside any gateway configuration's reach: they concern the model, the host
/// application, or how mcp-warden itself is built and tested, not what a configuration does.
pub(crate) const OUT_OF_REACH: &[(&str, &str)] = &[
    (
        "INT-3",
        "obfuscation of the server's code is the server author's choice",
    ),
    (
        "SUP-1",
        "the gateway's own dependencies are checked when it is built, not by a configuration",
    ),
    (
        "SUP-3",
        "source verification of the gateway's own code happens at build time",
    ),
    (
        "SUP-4",
        "the gateway's build process is not part of a configuration",
    ),
    (
        "PLAT-2",
        "cross-platform testing is done by the project's test suite, not at run time",
    ),
    (
        "PLAT-3",
        "platform risk assessment is documentation (docs/sandbox.md), not a runtime control",
    ),
    (
        "APP-2",
        "updates of the host application are verified by the host",
    ),
    (
        "APP-3",
        "sandboxing the host application is the host's; upstream servers are sandboxed under RUN-1",
    ),
    (
        "UX-6",
        "status of operations in progress is shown by the host's user interface",
    ),
    (
        "PROMPT-3",
        "separating system prompts from user input happens in the host and the model",
    ),
    (
        "PROMPT-5",
        "context isolation between sources happens in the host's context assembly",
    ),
    ("PROMPT-6", "prompt templates are the host's"),
    (
        "PROMPT-8",
        "consistency of model output across environments is the model's",
    ),
    ("PROMPT-9", "the host manages its conversation history"),
    (
        "SAMP-5",
        "model preferences are interpreted by the client that samples",
    ),
    (
        "LLM-1",
        "execution safety inside the model is outside a gateway's reach; it controls definitions, results and approvals",
    ),
    (
        "LLM-2",
        "outside a gateway's reach (the model's own behaviour)",
    ),
    (
        "LLM-3",
        "outside a gateway's reach (the model's own behaviour)",
    ),
    (
        "LLM-4",
        "outside a gateway's reach (the model's own behaviour)",
    ),
    (
        "MM-1",
        "text inside image and audio content is not inspected; size limits still apply",
    ),
    (
        "CRYPTO-2",
        "wallet-specific transaction checks need wallet semantics the gateway does not have",
    ),
    (
        "CRYPTO-3",
        "wallet-specific transaction checks need wallet semantics the gateway does not have",
    ),
    (
        "CRYPTO-4",
        "wallet-specific transaction checks need wallet semantics the gateway does not have",
    ),
    (
        "CRYPTO-5",
        "wallet-specific transaction checks need wallet semantics the gateway does not have",
    ),
    (
        "CRYPTO-6",
        "wallet-specific transaction checks need wallet semantics the gateway does not have",
    ),
    (
        "CRYPTO-7",
        "wallet-specific transaction checks need wallet semantics the gateway does not have",
    ),
];
