/** @odoo-module **/

import { registry } from "@web/core/registry";

/*
 * The WhatsApp inbox in Discuss (test_tours.py, test_inbox_tour): the responsible
 * finds the conversation in the "WhatsApp" category with its unread counter, reads
 * the customer's message, sees the 24-hour window and answers.
 */

const CUSTOMER = "Amélie Dupont";
const INBOUND = "Bonjour, le toit fuit encore";
const REPLY = "Merci, nous passons demain matin";

registry.category("web_tour.tours").add("whatsapp_business_inbox_tour", {
    steps: () => [
        {
            content: "The WhatsApp category is in the sidebar",
            trigger: ".o-whatsapp-DiscussSidebarCategory:contains('WhatsApp')",
        },
        {
            content: "The conversation shows one unread message; open it",
            trigger: `.o-mail-DiscussSidebarChannel:contains('${CUSTOMER}'):has(.o-mail-DiscussSidebar-badge:contains('1'))`,
            run: "click",
        },
        {
            content: "The customer's message, by the customer",
            trigger: `.o-mail-Message:contains('${INBOUND}'):contains('${CUSTOMER}')`,
        },
        {
            content: "The header tells until when free text may be sent",
            trigger: "input[class*='threadDescription']",
            run() {
                if (!this.anchor.value.includes("UTC")) {
                    throw new Error(`No 24-hour window in the header: ${this.anchor.value}`);
                }
            },
        },
        {
            content: "Answer",
            trigger: ".o-mail-Composer-input",
            run: `edit ${REPLY}`,
        },
        {
            trigger: ".o-mail-Composer-input",
            run: "press Enter",
        },
        {
            content: "The reply is in the conversation, queued for WhatsApp",
            trigger: `.o-mail-Message:contains('${REPLY}') .o_whatsapp_state_queued`,
        },
    ],
});
