/** @odoo-module **/

import { registry } from "@web/core/registry";
import { screenshotStep } from "@whatsapp_business/../tests/tours/screenshot";

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
                if (!this.anchor.value.includes("24-hour window")) {
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

/*
 * Chatting in the inbox (test_tours.py, test_inbox_chat_tour): the salesperson
 * opens the conversation; while it is open the customer writes again (the test
 * processes their webhook when Discuss marks the conversation as seen) and the
 * message appears live. The salesperson answers with buttons from the
 * conversation's "Template / Buttons" action; Meta's "read" status (processed by
 * the test after the send) shows as the blue tick of the message once loaded.
 */
const LIVE = "Le toit fuit encore ce matin";
const BUTTONS = "Quand pouvons-nous passer ?";
// What comes over the bus: a loaded 2-core test machine may take seconds.
const BUS_WAIT = 30000;

registry.category("web_tour.tours").add("whatsapp_business_inbox_chat_tour", {
    steps: () => [
        {
            content: "Open the conversation",
            trigger: `.o-mail-DiscussSidebarChannel:contains('${CUSTOMER}')`,
            run: "click",
        },
        {
            content: "The customer's first message",
            trigger: `.o-mail-Message:contains('${INBOUND}')`,
        },
        {
            content: "Their new message arrives while the conversation is open",
            trigger: `.o-mail-Message:contains('${LIVE}')`,
            timeout: BUS_WAIT,
        },
        {
            content: "Answer with buttons",
            trigger: "button[name='whatsapp-send-template']",
            run: "click",
        },
        {
            content: "The composer opens in buttons mode",
            trigger: ".modal div[name='mode'] input[data-value='interactive']:checked",
        },
        {
            trigger: ".modal div[name='body'] textarea",
            run: `edit ${BUTTONS}`,
        },
        {
            content: "Add a button",
            trigger: ".modal div[name='choice_ids'] .o_field_x2many_list_row_add a",
            run: "click",
        },
        {
            trigger: ".modal div[name='choice_ids'] .o_data_row [name='title'] input",
            run: "edit Lundi",
        },
        {
            content: "Send",
            trigger: ".modal button[name='action_send']",
            run: "click",
        },
        {
            content: "The composer is closed",
            trigger: "body:not(:has(.modal))",
        },
        {
            content: "The buttons are in the conversation",
            trigger: `.o-mail-Message:contains('${BUTTONS}'):contains('Lundi')`,
            timeout: BUS_WAIT,
        },
        {
            content: "With their delivery tick",
            trigger: `.o-mail-Message:contains('${BUTTONS}') .o-whatsapp-MessageState`,
            timeout: BUS_WAIT,
        },
        {
            content: "The customer read them: the tick turns blue, without a reload",
            trigger: `.o-mail-Message:contains('${BUTTONS}') .o-whatsapp-MessageState[data-state='read']`,
            timeout: BUS_WAIT,
        },
        // README: the inbox in Discuss, the WhatsApp category in the sidebar and the
        // open conversation with its 24-hour window and the read buttons.
        screenshotStep(
            "inbox",
            `.o-mail-Message:contains('${BUTTONS}'):has(.o-whatsapp-MessageState[data-state='read'])`,
            { block: "end", closeNotifications: true }
        ),
    ],
});
