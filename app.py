"""Gradio app (placeholder until the app issue): shows the keyword registry.

The real app will call `lreorg_hub.pipeline` only; Gradio is imported here and nowhere else.
"""

import gradio as gr

from lreorg_hub import keywords as kw


def build_keywords_tab() -> None:
    rows = [[k.name, ", ".join(k.subcategories) or "ε-DP group sampler (GIA)"]
            for k in kw.KEYWORDS.values()]
    gr.Dataframe(value=rows, headers=["keyword", "sub-categories"], interactive=False)


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="LReOrg face anonymization", delete_cache=(600, 600)) as demo:
        gr.Markdown("# LReOrg face anonymization\nThe photo tabs arrive with the pipeline; "
                    "this page lists the keywords the method understands.")
        with gr.Tab("Keywords"):
            build_keywords_tab()
    return demo


demo = build_demo()

if __name__ == "__main__":
    demo.launch()
